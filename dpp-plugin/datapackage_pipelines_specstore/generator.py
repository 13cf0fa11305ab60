"""DPP's reader of specstore's pipeline files.

specstore writes each dataset's pipelines into a file of its own,
``<DPP working folder>/<owner>/<dataset>/specstore.source-spec.yaml``. DPP hands a
file named ``<name>.source-spec.yaml`` to the generator of its plugin ``<name>`` (this
package's :class:`Generator`, DPP's plugin ``specstore``) and registers the pipelines
the generator yields under the ids it gives them: here ``./<owner>/<dataset>``, the ids
a single ``pipeline-spec.yaml`` per owner would give. So an upload writes one small
file, however many datasets its owner has.

The file is ``{"pipelines": {"<owner>/<dataset>": {<pipeline>}, ...}}``. DPP asks a
generator to validate a file, then to generate (``internal_validate`` and
``internal_generate``, the methods of DPP's ``GeneratorBase``); this class answers
both without importing DPP, because specstore's own process imports this package too.
"""

from __future__ import annotations

from typing import Any

FILE_NAME = "specstore.source-spec.yaml"


class Generator:
    def internal_validate(self, source: Any) -> bool:
        """True for a file as specstore writes it: pipelines by id, each an object."""
        pipelines = source.get("pipelines") if isinstance(source, dict) else None
        return isinstance(pipelines, dict) and all(
            isinstance(pipeline_id, str) and pipeline_id and isinstance(details, dict)
            for pipeline_id, details in pipelines.items()
        )

    def internal_generate(self, source: Any, base: str) -> list[tuple[str, Any]] | None:
        """The file's pipelines, each under its id as DPP writes ids (``./`` first), each
        run as one processor (:func:`one_processor`)."""
        if not self.internal_validate(source):
            return None
        return [
            (f"./{pipeline_id}", one_processor(details))
            for pipeline_id, details in source["pipelines"].items()
        ]


def one_processor(details: dict[str, Any]) -> dict[str, Any]:
    """A pipeline whose steps run as one flow in one processor, ``specstore.flow``, as the
    embedded runner runs them: DPP would run each step as a process of its own, every row
    serialised from one to the next (a run took four times as long as the same steps in
    one process). DPP still runs, retries, reports and logs it as a pipeline."""
    steps = details.get("pipeline")
    if not isinstance(steps, list) or not steps:
        return details
    return {**details, "pipeline": [{"run": "specstore.flow", "parameters": {"steps": steps}}]}
