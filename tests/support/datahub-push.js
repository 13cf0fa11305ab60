// Drives the DataHub client's library (datahub-client 0.5.8, from npm-tools/) the way the
// `data push` and `data push-flow` commands drive it, and prints what they print.
//
//   node datahub-push.js push <data package folder> '<options as JSON>'
//   node datahub-push.js push-flow <data package folder>
//
// The hub's API base URL, the user's token and identity come from HUB_URL, HUB_TOKEN,
// HUB_OWNERID and HUB_OWNER. On success it prints the dataset's URL, as the CLI does; on
// failure the error's message (what the user sees), and exits 1.
'use strict'

const path = require('path')

const tools = process.env.SPECSTORE_NPM_TOOLS || path.join(__dirname, '..', '..', 'npm-tools')
const client = require.resolve('datahub-client', {paths: [tools]})
const {DataHub} = require(client)
// The data.js the client itself depends on: the Dataset it knows how to push.
const {Dataset} = require(require.resolve('data.js', {paths: [path.dirname(client)]}))

const DOMAIN = 'https://datahub.test'

async function main() {
  const [command, folder, optionsText] = process.argv.slice(2)
  const owner = process.env.HUB_OWNER
  const datahub = new DataHub({
    apiUrl: process.env.HUB_URL,
    token: process.env.HUB_TOKEN,
    ownerid: process.env.HUB_OWNERID,
    owner,
    debug: false
  })
  let name
  let response
  if (command === 'push') {
    const dataset = await Dataset.load(folder)
    name = dataset.descriptor.name
    response = await datahub.push(dataset, JSON.parse(optionsText || '{}'))
  } else if (command === 'push-flow') {
    response = await datahub.pushFlow(
      path.join(folder, '.datahub', 'flow.yaml'),
      path.join(folder, '.datahub', 'datapackage.json')
    )
    // As the CLI's push-flow does: the dataset's name from dataset_id.
    name = response.dataset_id.split('/').pop()
  } else {
    throw new Error(`unknown command ${command}`)
  }
  const revision = response.flow_id.split('/').pop()
  console.log('🙌  your data is published!')
  console.log(`🔗  ${DOMAIN}/${owner}/${name}/v/${revision}`)
  datahub.close()
}

main().catch(err => {
  console.log(`> Error! ${err.message}`)
  process.exit(1)
})
