"""The pipeline layer: what a stored revision becomes and how it runs.

* :mod:`.planner`: a revision's spec -> pipelines in DPP's format, one plan for both
  engines; where outputs go.
* :mod:`.runner`: the embedded runner (dataflows in a child process per run,
  :mod:`.flowrunner`), with its leases in the database.
* :mod:`.dpp`: the DPP engine: pipeline files, the dashboard, the dispatcher.
* :mod:`.reports`: engine events and failures made fit to show.

What a pipeline *does* with untrusted input (fetching, loading, writing, publishing)
lives in ``datapackage_pipelines_specstore`` (``dpp-plugin/``), which both engines run.
"""
