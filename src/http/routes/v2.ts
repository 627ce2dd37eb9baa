/**
 * @module http/routes/v2 — the Open Inference Protocol (KServe v2) over HTTP/REST, spoken by Triton,
 * KServe, MLServer and Seldon clients. Each route reads its path and body and writes the answer of
 * the transport-neutral core (protocols/v2/dataplane.ts), which the service binding calls too.
 * @see https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md
 */
import { Hono } from 'hono'
import type { Context } from 'hono'
import { readConfig } from '../../core/config'
import { readJson } from '../body'
import { asCaller, callerOf, refuseOtherMethods, setPredictionHeaders } from '../common'
import type { AppEnv } from '../common'
import { routeDocs } from '../openapi'
import { inferResponse, readInferRequest } from '../v2-body'
import { parseBody, RepositoryIndexRequest } from '../../protocols/schemas'
import type { InferRequest } from '../../protocols/schemas'
import { parseVersion } from '../../protocols/selector'
import {
  inferV2,
  modelMetadataV2,
  modelReadyV2,
  repositoryEntries,
  SERVER_METADATA,
} from '../../protocols/v2/dataplane'

type Ctx = Context<AppEnv>

const modelMetadata = async (c: Ctx, name: string, version?: string) =>
  c.json(await modelMetadataV2(callerOf(c), name, parseVersion(version)))

async function modelReady(c: Ctx, name: string, version?: string) {
  const ready = await modelReadyV2(callerOf(c), name, parseVersion(version))
  return ready.ready
    ? c.json(ready)
    : c.json({ name, ready: false, error: ready.error.message }, 503, ready.error.headers)
}

/** `…/infer`: the body is read once traffic control has let the request in (protocols/v2/dataplane.ts `inferV2`). */
async function infer(c: Ctx, name: string, version?: string) {
  let body: InferRequest | undefined
  const prediction = await asCaller(c, name, (caller) =>
    inferV2(caller, name, parseVersion(version), async () => {
      const request = await readInferRequest(c)
      body = request.body
      return request
    }),
  )
  setPredictionHeaders(c, prediction)
  return inferResponse(c, body!, prediction)
}

/**
 * Triton's repository index (its model repository extension): every served version of every model,
 * with its state in this isolate. The body is optional; `{"ready": true}` lists only loaded versions.
 */
async function repositoryIndex(c: Ctx) {
  const config = readConfig(c.env)
  // Triton's clients may send no body at all: that is an empty request, not malformed JSON.
  const empty = c.req.raw.body === null || c.req.header('content-length') === '0'
  const body = empty
    ? {}
    : parseBody(
        RepositoryIndexRequest,
        await readJson(c.req.raw, config.MAX_BODY_BYTES, undefined, config.BODY_READ_TIMEOUT_MS),
      )
  return c.json(await repositoryEntries(callerOf(c), body.ready ?? false))
}

export const v2 = refuseOtherMethods(
  new Hono<AppEnv>()
    .get('/v2', routeDocs.v2Server, (c) => c.json(SERVER_METADATA))
    .get('/v2/models/:name', routeDocs.v2Metadata, (c) => modelMetadata(c, c.req.param('name')))
    .get('/v2/models/:name/versions/:version', routeDocs.v2MetadataVersion, (c) =>
      modelMetadata(c, c.req.param('name'), c.req.param('version')),
    )
    .get('/v2/models/:name/ready', routeDocs.v2Ready, (c) => modelReady(c, c.req.param('name')))
    .get('/v2/models/:name/versions/:version/ready', routeDocs.v2ReadyVersion, (c) =>
      modelReady(c, c.req.param('name'), c.req.param('version')),
    )
    .post('/v2/models/:name/infer', routeDocs.v2Infer, (c) => infer(c, c.req.param('name')))
    .post('/v2/models/:name/versions/:version/infer', routeDocs.v2InferVersion, (c) =>
      infer(c, c.req.param('name'), c.req.param('version')),
    )
    .post('/v2/repository/index', routeDocs.repositoryIndex, (c) => repositoryIndex(c)),
  {
    '/v2': 'GET',
    '/v2/repository/index': 'POST',
    '/v2/models/:name': 'GET',
    '/v2/models/:name/versions/:version': 'GET',
    '/v2/models/:name/ready': 'GET',
    '/v2/models/:name/versions/:version/ready': 'GET',
    '/v2/models/:name/infer': 'POST',
    '/v2/models/:name/versions/:version/infer': 'POST',
  },
)
