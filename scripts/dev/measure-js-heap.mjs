#!/usr/bin/env node
/**
 * Measures the Worker bundle's JavaScript (V8) heap in a real workerd: starts `wrangler dev` with an
 * inspector (scripts/tools/launch.mjs), connects to it over the Chrome DevTools Protocol and reads
 * `Runtime.getHeapUsage` after a full garbage collection (`HeapProfiler.collectGarbage`): once after
 * start, once after a first request (the first request loads tf.js's backend and a model), once after
 * a request with a photo (the JPEG decoder's glue and heap).
 * Prints one line per step; docs/memory.md ("The JavaScript side") has the figures and what the
 * budget makes of them. Usage: node scripts/dev/measure-js-heap.mjs
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import WebSocket from 'ws'
import { ROOT, startWranglerDev } from '../tools/launch.mjs'

/** The inspector's first target: the Worker's isolate. */
async function connect(inspectorPort) {
  const deadline = Date.now() + 30_000
  for (;;) {
    try {
      const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()
      const url = targets.find((t) => t.webSocketDebuggerUrl)?.webSocketDebuggerUrl
      if (url) {
        const ws = new WebSocket(url)
        await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)))
        return ws
      }
    } catch (error) {
      if (Date.now() > deadline) throw error
    }
    if (Date.now() > deadline) throw new Error('the inspector lists no target')
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

let nextId = 1
function send(ws, method, params = {}) {
  const id = nextId++
  return new Promise((resolve, reject) => {
    const onMessage = (data) => {
      const message = JSON.parse(String(data))
      if (message.id !== id) return
      ws.off('message', onMessage)
      message.error ? reject(new Error(`${method}: ${message.error.message}`)) : resolve(message.result)
    }
    ws.on('message', onMessage)
    ws.send(JSON.stringify({ id, method, params }))
  })
}

/** Used and total V8 heap after a full collection. */
async function heapAfterGc(ws) {
  await send(ws, 'HeapProfiler.collectGarbage').catch(() => {})
  return send(ws, 'Runtime.getHeapUsage')
}

const server = await startWranglerDev({ nice: 10 })
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`
try {
  const ws = await connect(server.inspectorPort)
  const steps = []
  const record = async (step) => {
    const { usedSize, totalSize } = await heapAfterGc(ws)
    steps.push({ step, usedSize, totalSize })
    console.log(`${step}: V8 heap used ${usedSize} bytes (${mb(usedSize)}), total ${totalSize} (${mb(totalSize)})`)
  }
  await record('after start')
  const iris = await fetch(`${server.url}/v1/models/iris:predict`, {
    method: 'POST',
    body: JSON.stringify({ instances: [[5.1, 3.5, 1.4, 0.2]] }),
  })
  if (iris.status !== 200) throw new Error(`iris: ${iris.status} ${await iris.text()}`)
  await record('after a first request (iris)')
  const png = readFileSync(join(ROOT, 'test/fixtures/models/_images/chelsea.jpg'))
  const digits = await fetch(`${server.url}/v1/models/digits:classify`, {
    method: 'POST',
    headers: { 'content-type': 'image/jpeg' },
    body: png,
  })
  if (digits.status !== 200) throw new Error(`digits: ${digits.status} ${await digits.text()}`)
  await record('after a photo (digits, the JPEG decoder)')
  ws.close()
  console.log(JSON.stringify({ jsHeap: steps }))
} finally {
  await server.stop()
}
