// The try-it page: lists the models, runs `digits` on a drawing and `iris` on a form, and shows what
// each call's headers say about the model cache (X-Model-Cache) and its timings (Server-Timing).
// Same origin as the API, so every response header is readable without CORS.

const $ = (id) => document.getElementById(id)
const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
const SPECIES = ['setosa', 'versicolor', 'virginica']

/** Calls the API; returns the parsed body and what the call reported about the cache and timings. */
async function call(method, path, body) {
  const started = performance.now()
  const res = await fetch(path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const json = await res.json()
  if (method === 'POST' && path !== INDEX) refreshStates()
  const roundTripMs = Math.round(performance.now() - started)
  const h = (name) => res.headers.get(name) ?? '–'
  const info = { status: res.status, cache: h('x-model-cache'), version: h('x-model-version'), timing: h('server-timing'), roundTripMs }
  if (!res.ok) throw Object.assign(new Error(json.error ?? `HTTP ${res.status}`), { info })
  return { json, info }
}

/** A ranked answer (`[{label, score}]`) in a panel: a bar per label, the best one in its output. */
function showRanked(section, output, ranked) {
  showBars(section.querySelector('.bars'), ranked.map((r) => r.label), ranked.map((r) => r.score))
  output.textContent = ranked[0].label
}

/** Shows one call's status, cache outcome, version and Server-Timing entries. */
function showCall(target, path, info) {
  const timings = info.timing === '–' ? [] : info.timing.split(',').map((t) => t.trim())
  const rows = [
    ['call', path],
    ['status', String(info.status)],
    ['X-Model-Cache', info.cache],
    ['X-Model-Version', info.version],
    ...timings.map((t) => {
      const [name, ...params] = t.split(';')
      const dur = params.find((p) => p.trim().startsWith('dur='))?.split('=')[1]
      return [`Server-Timing ${name}`, dur === undefined ? t : `${dur} ms`]
    }),
    ['round trip', `${info.roundTripMs} ms`],
  ]
  target.replaceChildren(
    ...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt')
      const dd = document.createElement('dd')
      dt.textContent = k
      dd.textContent = v
      dd.dataset.field = k
      return [dt, dd]
    }),
  )
}

/** A horizontal bar per class, the most probable one highlighted. */
function showBars(target, labels, probabilities) {
  const top = probabilities.indexOf(Math.max(...probabilities))
  target.replaceChildren(
    ...labels.flatMap((label, i) => {
      const name = document.createElement('span')
      name.textContent = label
      const bar = document.createElement('div')
      bar.className = i === top ? 'bar top' : 'bar'
      const fill = document.createElement('span')
      fill.style.width = `${(probabilities[i] * 100).toFixed(1)}%`
      bar.append(fill)
      const value = document.createElement('span')
      value.textContent = `${(probabilities[i] * 100).toFixed(1)}%`
      return [name, bar, value]
    }),
  )
  return top
}

function showError(output, target, error) {
  output.textContent = 'error'
  output.className = 'error'
  if (error.info) showCall(target, '', error.info)
  const p = document.createElement('p')
  p.className = 'error'
  p.textContent = error.message
  target.append(p)
}

// ===== Models =====

const shape = (tensors) => tensors.map((t) => `${t.name} ${t.datatype} [${t.shape.join(', ')}]`).join('; ')
const INDEX = '/v2/repository/index'
/** How often the table's states are read again, besides after every prediction this page makes. */
const REFRESH_MS = 5_000

/** A version's state in the isolate that answered, in words: loaded, loading, not loaded, or refused with its reason. */
function stateOf(entry) {
  if (entry.state === 'READY') return { state: 'loaded', text: 'loaded' }
  if (entry.state === 'LOADING') return { state: 'loading', text: 'loading…' }
  // Not loaded is not broken: the first request loads it.
  if (/loads on first use/.test(entry.reason ?? '')) return { state: 'not-loaded', text: 'not loaded (loads on first use)' }
  return { state: 'refused', text: `refused: ${entry.reason ?? 'unavailable'}` }
}

/** Writes an index entry's state into its row. */
function showState(tr, entry) {
  const { state, text } = stateOf(entry)
  tr.dataset.state = state
  const td = tr.cells[2]
  td.textContent = text
  td.className = state === 'refused' ? 'error' : ''
}

let refreshing
let again = false
let refreshes = 0
/**
 * Reads the index again and updates each row's state; a version added or gone redraws the table.
 * Asked while a read is in flight (begun before a prediction's load ended), it reads once more after.
 */
function refreshStates() {
  if (refreshing) {
    again = true
    return
  }
  refreshing = call('POST', INDEX)
    .then(({ json: index }) => {
      const rows = [...$('models').tBodies[0].rows].filter((tr) => tr.dataset.model)
      const key = (name, version) => `${name}/${version}`
      const byKey = new Map(rows.map((tr) => [key(tr.dataset.model, tr.dataset.version), tr]))
      if (index.length !== rows.length || index.some((e) => !byKey.has(key(e.name, e.version)))) return listModels()
      for (const entry of index) showState(byKey.get(key(entry.name, entry.version)), entry)
      document.body.dataset.refreshes = String(++refreshes)
    })
    .catch(() => {}) // the next refresh tries again; the table keeps what it last knew
    .finally(() => {
      refreshing = undefined
      if (again) {
        again = false
        refreshStates()
      }
    })
}

async function listModels() {
  const tbody = $('models').tBodies[0]
  try {
    const names = [...new Set((await call('POST', INDEX)).json.map((e) => e.name))]
    const metadata = new Map()
    // Metadata is answered from the repository index where it can be, so listing loads no model.
    for (const name of names) metadata.set(name, (await call('GET', `/v2/models/${encodeURIComponent(name)}`)).json)
    // The states are read after the metadata: whatever reading it did is shown, not what was before.
    const { json: index } = await call('POST', INDEX)
    tbody.replaceChildren(
      ...index.map((entry) => {
        const m = metadata.get(entry.name)
        const tr = document.createElement('tr')
        tr.dataset.model = entry.name
        tr.dataset.version = entry.version
        for (const text of [entry.name, entry.version, '', m?.platform ?? '', m ? shape(m.inputs) : '', m ? shape(m.outputs) : '']) {
          const td = document.createElement('td')
          td.textContent = text
          tr.append(td)
        }
        showState(tr, entry)
        return tr
      }),
    )
    document.body.dataset.models = 'listed'
    listImageModels(metadata)
    listTextModels(metadata)
  } catch (error) {
    tbody.innerHTML = ''
    const td = tbody.insertRow().insertCell()
    td.colSpan = 6
    td.className = 'error'
    td.textContent = error.message
  }
}

// ===== Digits: a drawing pad, and the drawing turned into an MNIST-style 28×28 image =====

const pad = $('pad')
const ctx = pad.getContext('2d', { willReadFrequently: true })

function clearPad() {
  ctx.fillStyle = '#000'
  ctx.fillRect(0, 0, pad.width, pad.height)
  $('small').getContext('2d').clearRect(0, 0, 28, 28)
}

let last
pad.addEventListener('pointerdown', (e) => {
  pad.setPointerCapture(e.pointerId)
  last = [e.offsetX, e.offsetY]
  stroke(last)
})
pad.addEventListener('pointermove', (e) => {
  if (!last) return
  stroke([e.offsetX, e.offsetY])
})
pad.addEventListener('pointerup', () => (last = undefined))

function stroke(to) {
  // White on black, as MNIST digits are; a thick round pen survives the downscale to 28×28.
  ctx.strokeStyle = '#fff'
  ctx.lineWidth = 20
  ctx.lineCap = 'round'
  ctx.lineJoin = 'round'
  ctx.beginPath()
  ctx.moveTo(last[0], last[1])
  ctx.lineTo(to[0], to[1])
  ctx.stroke()
  last = to
}

/**
 * MNIST's own preprocessing: the digit's bounding box scaled (area average) to fit 20×20 keeping its
 * aspect ratio, then placed in a 28×28 field so its centre of mass is at the centre.
 * Returns 784 values in [0, 1], or undefined for an empty pad.
 */
function mnistPixels() {
  const { width, height } = pad
  const rgba = ctx.getImageData(0, 0, width, height).data
  let [x0, y0, x1, y1] = [width, height, -1, -1]
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (rgba[(y * width + x) * 4] > 20) {
        x0 = Math.min(x0, x)
        y0 = Math.min(y0, y)
        x1 = Math.max(x1, x)
        y1 = Math.max(y1, y)
      }
    }
  }
  if (x1 < 0) return undefined
  const [w, h] = [x1 - x0 + 1, y1 - y0 + 1]
  const scale = 20 / Math.max(w, h)
  const [dw, dh] = [Math.max(1, Math.round(w * scale)), Math.max(1, Math.round(h * scale))]
  const sum = new Float32Array(dw * dh)
  const count = new Float32Array(dw * dh)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = Math.min(dh - 1, Math.floor((y * dh) / h)) * dw + Math.min(dw - 1, Math.floor((x * dw) / w))
      sum[i] += rgba[((y0 + y) * width + x0 + x) * 4] / 255
      count[i]++
    }
  }
  const small = sum.map((s, i) => s / count[i])
  let [mass, cx, cy] = [0, 0, 0]
  small.forEach((v, i) => {
    mass += v
    cx += v * (i % dw)
    cy += v * Math.floor(i / dw)
  })
  const clamp = (v, max) => Math.max(0, Math.min(max, v))
  const ox = clamp(Math.round(13.5 - cx / mass), 28 - dw)
  const oy = clamp(Math.round(13.5 - cy / mass), 28 - dh)
  const pixels = new Float32Array(28 * 28)
  small.forEach((v, i) => (pixels[(oy + Math.floor(i / dw)) * 28 + ox + (i % dw)] = v))
  return pixels
}

/** Shows the 28×28 image the model gets. */
function preview(pixels) {
  const image = new ImageData(28, 28)
  pixels.forEach((v, i) => {
    image.data.set([v * 255, v * 255, v * 255, 255], i * 4)
  })
  $('small').getContext('2d').putImageData(image, 0, 0)
}

async function predictDigit() {
  const label = $('digits-label')
  label.className = ''
  const pixels = mnistPixels()
  if (!pixels) {
    label.textContent = 'draw a digit first'
    return
  }
  preview(pixels)
  const path = '/v2/models/digits/infer'
  try {
    const body = { inputs: [{ name: 'image', shape: [1, 28, 28, 1], datatype: 'FP32', data: Array.from(pixels) }] }
    const { json, info } = await call('POST', path, body)
    const top = showBars($('digits-bars'), DIGITS, json.outputs[0].data)
    label.textContent = DIGITS[top]
    showCall($('digits-call'), path, info)
  } catch (error) {
    showError(label, $('digits-call'), error)
  }
}

// ===== Iris =====

async function predictIris(event) {
  event.preventDefault()
  const label = $('iris-label')
  label.className = ''
  const values = ['sepal_length', 'sepal_width', 'petal_length', 'petal_width'].map((n) => Number($('iris-form').elements[n].value))
  const path = '/v1/models/iris:predict'
  try {
    const { json, info } = await call('POST', path, { instances: [values] })
    const top = showBars($('iris-bars'), SPECIES, json.predictions[0])
    label.textContent = SPECIES[top]
    showCall($('iris-call'), path, info)
  } catch (error) {
    showError(label, $('iris-call'), error)
  }
}

clearPad()
$('digits-predict').addEventListener('click', predictDigit)
$('digits-clear').addEventListener('click', clearPad)
$('iris-form').addEventListener('submit', predictIris)
listModels().then(() => setInterval(refreshStates, REFRESH_MS))

// ===== Image models: a panel per model with an image input =====

/** Draws `img` into `canvas` as the model's preprocessing does: a centered crop first if asked, resized to [h, w], gray for one channel. */
function drawModelInput(canvas, img, image) {
  const [h, w] = image.size
  canvas.width = w
  canvas.height = h
  const context = canvas.getContext('2d')
  let [sx, sy, sw, sh] = [0, 0, img.naturalWidth, img.naturalHeight]
  if (image.fit === 'center-crop') {
    if (sw * h > sh * w) {
      const cw = Math.round((sh * w) / h)
      sx = Math.floor((sw - cw) / 2)
      sw = cw
    } else {
      const ch = Math.round((sw * h) / w)
      sy = Math.floor((sh - ch) / 2)
      sh = ch
    }
  }
  context.drawImage(img, sx, sy, sw, sh, 0, 0, w, h)
  if (image.channels === 1) {
    const data = context.getImageData(0, 0, w, h)
    for (let i = 0; i < data.data.length; i += 4) {
      const luma = 0.2989 * data.data[i] + 0.587 * data.data[i + 1] + 0.114 * data.data[i + 2]
      data.data.set([luma, luma, luma], i)
    }
    context.putImageData(data, 0, 0)
  }
}

/** POSTs a file as it is, with its own content type; returns the body and what the call reported. */
async function callRaw(path, file) {
  const started = performance.now()
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': file.type || 'application/octet-stream' }, body: file })
  const json = await res.json()
  refreshStates()
  const h = (name) => res.headers.get(name) ?? '–'
  const info = { status: res.status, cache: h('x-model-cache'), version: h('x-model-version'), timing: h('server-timing'), roundTripMs: Math.round(performance.now() - started) }
  if (!res.ok) throw Object.assign(new Error(json.error ?? `HTTP ${res.status}`), { info })
  return { json, info }
}

/** The color detection boxes are drawn in: one no photo is likely to be full of, so a test can find the boxes' edges. */
const BOX_COLOR = '#ff00ff'

/** Draws the photo at its own size with each detection's box and label on it, as `:detect` answered them (pixels of the photo as sent). */
function drawDetections(canvas, img, detections) {
  canvas.width = img.naturalWidth
  canvas.height = img.naturalHeight
  const context = canvas.getContext('2d')
  context.drawImage(img, 0, 0)
  const line = Math.max(2, Math.round(Math.min(canvas.width, canvas.height) / 150))
  context.lineWidth = line
  context.font = `${Math.max(12, line * 6)}px system-ui, sans-serif`
  context.textBaseline = 'top'
  for (const { label, score, box } of detections) {
    context.strokeStyle = BOX_COLOR
    context.strokeRect(box.xmin, box.ymin, box.xmax - box.xmin, box.ymax - box.ymin)
    const text = `${label} ${score.toFixed(2)}`
    const width = context.measureText(text).width + 2 * line
    const height = line * 6 + 2 * line
    const y = box.ymin >= height ? box.ymin - height : box.ymin
    context.fillStyle = BOX_COLOR
    context.fillRect(box.xmin, y, width, height)
    context.fillStyle = '#ffffff'
    context.fillText(text, box.xmin + line, y + line)
  }
}

/** A list of the detections under the drawing: label, score, box. */
function showDetections(target, detections) {
  target.replaceChildren(
    ...detections.map(({ label, score, box }) => {
      const item = document.createElement('li')
      item.textContent = `${label} ${score.toFixed(3)} at (${Math.round(box.xmin)}, ${Math.round(box.ymin)})–(${Math.round(box.xmax)}, ${Math.round(box.ymax)})`
      return item
    }),
  )
}

function imagePanel(name, input, labels, task) {
  const section = document.createElement('section')
  section.className = 'image-model'
  section.dataset.model = name
  const image = input.parameters.image
  // A detector (`detect` in its config.json, `task` in its metadata) gets :detect and its boxes drawn on the photo.
  const detector = task === 'object-detection'
  if (detector) section.dataset.task = task
  section.innerHTML = `<h3></h3><p class="hint"></p>
    <label class="drop">Drop a photo here, or pick one<input type="file" accept="image/jpeg,image/png,image/webp"></label>
    <div><img class="photo" alt="the photo sent"><canvas class="model-input" aria-label="the input the model gets"></canvas></div>
    ${detector ? '<canvas class="detections" aria-label="the photo with the boxes found"></canvas><p class="result">Found: <output>–</output></p><ol class="boxes"></ol>' : '<p class="result">Label: <output>–</output></p><div class="bars"></div>'}<dl class="call"></dl>`
  section.querySelector('h3').textContent = name
  section.querySelector('.hint').textContent = `input '${input.name}': ${image.size[0]}×${image.size[1]}, ${image.channels === 1 ? 'gray' : 'RGB'}, ${image.fit ?? 'stretch'}` +
    (labels ? `; ${labels.length} labels` : '; no labels (:classify answers 400)') + (detector ? '; a detector: :detect' : '')
  const drop = section.querySelector('.drop')
  const picker = section.querySelector('input')
  const output = section.querySelector('output')
  const run = async (file) => {
    output.className = ''
    output.textContent = '…'
    const photo = section.querySelector('.photo')
    photo.src = URL.createObjectURL(file)
    await photo.decode().then(() => drawModelInput(section.querySelector('.model-input'), photo, image), () => {})
    const path = `/v1/models/${encodeURIComponent(name)}:${detector ? 'detect' : 'classify'}`
    try {
      const { json, info } = await callRaw(path, file)
      if (detector) {
        drawDetections(section.querySelector('canvas.detections'), photo, json)
        showDetections(section.querySelector('.boxes'), json)
        output.textContent = json.length === 0 ? 'nothing' : `${json.length} (${json[0].label})`
      } else {
        showRanked(section, output, json)
      }
      showCall(section.querySelector('.call'), path, info)
    } catch (error) {
      showError(output, section.querySelector('.call'), error)
    }
  }
  picker.addEventListener('change', () => picker.files[0] && run(picker.files[0]))
  drop.addEventListener('dragover', (e) => {
    e.preventDefault()
    drop.classList.add('over')
  })
  drop.addEventListener('dragleave', () => drop.classList.remove('over'))
  drop.addEventListener('drop', (e) => {
    e.preventDefault()
    drop.classList.remove('over')
    if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0])
  })
  return section
}

/** Builds a panel for every model whose metadata shows an image input. */
function listImageModels(metadata) {
  const panels = [...metadata].flatMap(([name, m]) => {
    const input = m?.inputs.find((i) => i.datatype === 'BYTES' && i.parameters?.image)
    return input ? [imagePanel(name, input, m.parameters?.labels, m.parameters?.task)] : []
  })
  const target = $('image-panels')
  if (panels.length > 0) target.replaceChildren(...panels)
  else target.innerHTML = '<p class="hint">No model has an image input.</p>'
  document.body.dataset.images = 'listed'
}

// ===== Text models: a panel per model whose inputs are fed from a tokenizer =====

/** A text box and the model's answer: labels as bars (`:classify`), or the vector's first values (`:embed`). */
function textPanel(name, input, m) {
  const section = document.createElement('section')
  section.className = 'text-model'
  section.dataset.model = name
  const embeds = m.parameters?.embed !== undefined
  const verb = embeds ? 'embed' : 'classify'
  section.innerHTML = `<h3></h3><p class="hint"></p>
    <textarea rows="4" cols="40" aria-label="the text sent"></textarea><button type="button">:${verb}</button>
    <p class="result">${embeds ? 'Vector' : 'Label'}: <output>–</output></p><div class="bars"></div><dl class="call"></dl>`
  section.querySelector('h3').textContent = name
  const text = input.parameters.text
  section.querySelector('.hint').textContent = `input '${input.name}': ${text.tokenizer}, at most ${text.max_length} tokens` +
    (embeds ? `; ${m.parameters.embed.pooling} pooling` : m.parameters?.labels ? `; ${m.parameters.labels.length} labels` : '; no labels (:classify answers 400)')
  const output = section.querySelector('output')
  const textarea = section.querySelector('textarea')
  textarea.value = embeds ? 'the meeting is at noon' : 'WIN A FREE PRIZE! Click here to claim your cash now'
  section.querySelector('button').addEventListener('click', async () => {
    output.className = ''
    output.textContent = '…'
    const path = `/v1/models/${encodeURIComponent(name)}:${verb}`
    try {
      const { json, info } = await call('POST', path, { text: textarea.value })
      if (embeds) {
        output.textContent = `${json.shape[1]} values: ${json.data[0].slice(0, 4).map((v) => v.toFixed(3)).join(', ')}, …`
        section.querySelector('.bars').replaceChildren()
      } else {
        showRanked(section, output, json)
      }
      showCall(section.querySelector('.call'), path, info)
    } catch (error) {
      showError(output, section.querySelector('.call'), error)
    }
  })
  return section
}

/** Builds a panel for every model whose metadata shows a text input. */
function listTextModels(metadata) {
  const panels = [...metadata].flatMap(([name, m]) => {
    const input = m?.inputs.find((i) => i.datatype === 'BYTES' && i.parameters?.text)
    return input ? [textPanel(name, input, m)] : []
  })
  const target = $('text-panels')
  if (panels.length > 0) target.replaceChildren(...panels)
  else target.innerHTML = '<p class="hint">No model has a text input.</p>'
  document.body.dataset.texts = 'listed'
}
