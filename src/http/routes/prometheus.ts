/**
 * @module http/routes/prometheus — `GET /metrics` in Prometheus' text format (0.0.4), for the isolate that
 * answers: requests, latency histograms, the model cache's counters and what tf.js holds. One isolate's
 * view, for local runs and debugging; the fleet's is Analytics Engine (src/analytics/analytics.ts, docs/analytics.md).
 * @see https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 */
import { Hono } from 'hono'
import { isolate } from '../../isolate'
import { decoderHeapBytes, decoderHeapHighWaterBytes } from '../../protocols/images/decode'
import { family, keyLabels, sample } from '../../core/metrics'
import type { CacheCounters } from '../../cache/model-cache'
import { routeDocs } from '../openapi'
import type { AppEnv } from '../common'

/** Cache counters exported as Prometheus counters: name suffix and help text. */
const CACHE_COUNTERS: Array<[keyof CacheCounters, string, string]> = [
  ['hits', 'cache_hits_total', 'Leases served by a model already loaded.'],
  ['misses', 'cache_misses_total', 'Leases that started a load.'],
  ['joins', 'cache_joins_total', 'Leases that waited on a load another request started.'],
  ['loads', 'cache_loads_total', 'Models built and warmed up.'],
  ['loadFailures', 'cache_load_failures_total', 'Loads that failed (answered 503 with Retry-After).'],
  ['evictions', 'cache_evictions_total', 'Idle models evicted to fit the byte budget or the model count.'],
  ['drops', 'cache_drops_total', 'Models dropped: idle, unloaded by an admin, or replaced by a new version.'],
  ['disposals', 'cache_disposals_total', 'Models whose tensors were freed.'],
  ['reloads', 'cache_reloads_total', 'Models built afresh beside the serving copy.'],
]

export const metrics = new Hono<AppEnv>().get('/metrics', routeDocs.metrics, (c) => {
  const state = isolate()
  const { models, counters, budgetBytes, memory, reservedBytes, budgetHighWaterBytes, wasmHeap } = state.status(c.env)
  const { numTensors, numBytes } = memory
  const body = [
    ...state.metrics.families(),
    ...CACHE_COUNTERS.map(([key, name, help]) =>
      family(`warmserve_${name}`, 'counter', help, [sample(`warmserve_${name}`, counters[key])]),
    ),
    family('warmserve_models_loaded', 'gauge', 'Models available in this isolate.', [
      sample('warmserve_models_loaded', models.filter((m) => m.state === 'AVAILABLE').length),
    ]),
    family(
      'warmserve_model_weight_bytes',
      'gauge',
      'Bytes tf.js holds for the weights of each model held (available or retired, awaiting its last lease).',
      [
        ...models
          .filter((m) => m.footprint)
          .map((m) =>
            sample('warmserve_model_weight_bytes', m.footprint!.weightBytes, { ...keyLabels(m.key), state: m.state }),
          ),
      ],
    ),
    family(
      'warmserve_model_memory_bytes',
      'gauge',
      'Memory of each model held, as measured at load: weights, kernel state and one row of activations.',
      [
        ...models
          .filter((m) => m.memoryBytes !== undefined)
          .map((m) => sample('warmserve_model_memory_bytes', m.memoryBytes!, { ...keyLabels(m.key), state: m.state })),
      ],
    ),
    family(
      'warmserve_model_memory_counted_bytes',
      'gauge',
      'Bytes the budget counts for each model held with one row running: measured on the wasm heap at load, taken from the index, or estimated (see docs/memory.md).',
      [
        ...models
          .filter((m) => m.memoryBytes !== undefined)
          .map((m) =>
            sample('warmserve_model_memory_counted_bytes', m.memoryBytes!, {
              ...keyLabels(m.key),
              state: m.state,
              source: m.footprint!.measured,
            }),
          ),
      ],
    ),
    family(
      'warmserve_model_memory_measured_bytes',
      'gauge',
      "Bytes this isolate's wasm heap gave each model held, measured at load: at rest (free-space probe), plus one row's growth when measured on the heap.",
      [
        ...models
          .filter((m) => m.footprint?.heapBytes !== undefined)
          .map((m) =>
            sample('warmserve_model_memory_measured_bytes', m.footprint!.heapBytes!, {
              ...keyLabels(m.key),
              state: m.state,
            }),
          ),
      ],
    ),
    family(
      'warmserve_cache_budget_bytes',
      'gauge',
      'Bytes of memory models and their runs may hold at once (CACHE_BUDGET_BYTES).',
      [sample('warmserve_cache_budget_bytes', budgetBytes)],
    ),
    family(
      'warmserve_cache_reserved_bytes',
      'gauge',
      'Bytes of the budget reserved by loads and inferences in progress.',
      [sample('warmserve_cache_reserved_bytes', reservedBytes)],
    ),
    family(
      'warmserve_cache_high_water_bytes',
      'gauge',
      'The most bytes of the budget held at once (models, loads and runs).',
      [sample('warmserve_cache_high_water_bytes', budgetHighWaterBytes)],
    ),
    ...(wasmHeap
      ? [
          family(
            'warmserve_wasm_heap_bytes',
            'gauge',
            "Size of the wasm backend's heap (WebAssembly memory, which never shrinks).",
            [sample('warmserve_wasm_heap_bytes', wasmHeap.bytes)],
          ),
          family(
            'warmserve_wasm_heap_high_water_bytes',
            'gauge',
            "The largest the wasm backend's heap has been in this isolate.",
            [sample('warmserve_wasm_heap_high_water_bytes', wasmHeap.highWaterBytes)],
          ),
        ]
      : []),
    family(
      'warmserve_image_decoder_heap_bytes',
      'gauge',
      "Size of each image decoder's wasm heap: non-zero only while a decode runs (none is kept after).",
      Object.entries(decoderHeapBytes()).map(([codec, bytes]) =>
        sample('warmserve_image_decoder_heap_bytes', bytes, { codec }),
      ),
    ),
    family(
      'warmserve_image_decoder_heap_high_water_bytes',
      'gauge',
      'The largest heap an image decode has had in this isolate.',
      [sample('warmserve_image_decoder_heap_high_water_bytes', decoderHeapHighWaterBytes())],
    ),
    family(
      'warmserve_prediction_cache_errors_total',
      'counter',
      'Calls to the Cache API that failed, by operation (match, put); each pauses the prediction cache for a doubling while (1 s up to 5 min), then it is tried again.',
      [
        ...(['match', 'put'] as const).map((operation) =>
          sample('warmserve_prediction_cache_errors_total', state.predictions.errors[operation], { operation }),
        ),
      ],
    ),
    family(
      'warmserve_prediction_cache_backoff_seconds',
      'gauge',
      'Seconds until the prediction cache tries the Cache API again after failures (0: in use).',
      [sample('warmserve_prediction_cache_backoff_seconds', state.predictions.backoffMs() / 1000)],
    ),
    family(
      'warmserve_traffic_slots',
      'gauge',
      'Requests holding a traffic slot (state in_flight) or waiting for one (queued), per model (scope model: max_concurrent, max_queue) and for the isolate (scope isolate, model "": MAX_CONCURRENT, MAX_QUEUE).',
      [
        ...state.traffic
          .occupancy()
          .flatMap(({ scope, model, inFlight, queued }) => [
            sample('warmserve_traffic_slots', inFlight, { scope, model, state: 'in_flight' }),
            sample('warmserve_traffic_slots', queued, { scope, model, state: 'queued' }),
          ]),
      ],
    ),
    family(
      'warmserve_request_memory_bytes',
      'gauge',
      'JavaScript memory the inference requests in flight have reserved for their bodies (state reserved), and the pool they share (state limit: REQUEST_MEMORY_BYTES).',
      [
        sample('warmserve_request_memory_bytes', state.traffic.memory.used, { state: 'reserved' }),
        sample('warmserve_request_memory_bytes', state.traffic.memory.size, { state: 'limit' }),
      ],
    ),
    family(
      'warmserve_request_memory_waiting',
      'gauge',
      'Inference requests waiting for room in REQUEST_MEMORY_BYTES before their bodies are read.',
      [sample('warmserve_request_memory_waiting', state.traffic.memory.queued)],
    ),
    family('warmserve_tfjs_tensors', 'gauge', 'Tensors tf.js holds in this isolate (tf.memory().numTensors).', [
      sample('warmserve_tfjs_tensors', numTensors),
    ]),
    family(
      'warmserve_tfjs_bytes',
      'gauge',
      'Bytes of tensor data tf.js holds in this isolate (tf.memory().numBytes).',
      [sample('warmserve_tfjs_bytes', numBytes)],
    ),
  ]
  return c.body(`${body.join('\n')}\n`, 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' })
})
