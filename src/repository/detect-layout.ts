/**
 * @module repository/detect-layout — whether a model's `detect` block (config.json) fits its
 * outputs: the tensors it names exist, their rows hold what `columns` says, and `labels` name every
 * class. One check for both places a config is seen: scripts/build-index.mjs at build time, from the
 * signature model.json declares, and the Worker when the model loads (protocols/images/detect.ts),
 * from the built model's.
 *
 * Only erasable TypeScript and no relative imports at run time, as model-config.ts: Node runs this
 * file as build-index imports it.
 */
import type { DetectConfig } from './model-config'

/** An output as a signature describes it: `-1` for a dimension not known, `null` shape for an unknown rank. */
export interface OutputShape {
  name: string
  shape: number[] | null
}

/** Values in a row besides the class scores: the box's 4, and objectness for `box,objectness,classes`. */
const ROW_HEAD = { 'box,score,class': 6, 'box,classes': 4, 'box,objectness,classes': 5 } as const

/**
 * The values one row holds (K) for `columns`, with `classes` class scores where the columns have
 * them: 6 for `box,score,class`, 4 + C for `box,classes`, 5 + C for `box,objectness,classes`.
 */
export function rowWidth(columns: NonNullable<DetectConfig['columns']>, classes: number): number {
  return columns === 'box,score,class' ? ROW_HEAD[columns] : ROW_HEAD[columns] + classes
}

/**
 * The axis of `[n, a, b]` that holds a row's K values: 2 for `[n, N, K]`, 1 for the transposed
 * `[n, K, N]` (YOLOv8's export), recognised when K matches there and not at 2. Undefined when
 * neither dimension is K; `-1` dimensions count as unknown, so 'unknown' when it cannot yet tell.
 */
export function rowAxis(shape: readonly number[], width: number): 1 | 2 | 'unknown' | undefined {
  const [, a, b] = shape
  if (b === width) return 2
  if (a === width) return 1
  return a === -1 || b === -1 ? 'unknown' : undefined
}

const formatShape = (shape: readonly number[]) => `[${shape.map((d) => (d === -1 ? '?' : d)).join(', ')}]`

/** How many classes the rows or scores must hold: the labels, plus the indices below class_offset. */
export const classCount = (detect: DetectConfig, labels: number) => labels + detect.class_offset

/**
 * What is wrong with `detect` for a model with these outputs (`null`: not known before the model
 * runs) and this many labels: one sentence per problem, each naming the config key and the tensor;
 * empty when it fits. A dimension not known (`-1`) is left to be checked when the model answers.
 */
export function detectProblems(detect: DetectConfig, outputs: OutputShape[] | null, labels: number): string[] {
  const problems: string[] = []
  const list = outputs?.map((o) => `'${o.name}'`).join(', ')
  const find = (key: string, name: string) => {
    if (outputs === null) return undefined
    const output = outputs.find((o) => o.name === name)
    if (!output) problems.push(`${key} names '${name}', which the model does not have; its outputs are ${list}`)
    return output?.shape ?? undefined
  }
  const classes = classCount(detect, labels)
  const offset = detect.class_offset > 0 ? ` + class_offset ${detect.class_offset}` : ''
  if (detect.output !== undefined && detect.columns !== undefined) {
    const shape = find('detect.output', detect.output)
    if (!shape) return problems
    if (shape.length !== 3) {
      problems.push(
        `detect.output '${detect.output}' has shape ${formatShape(shape)}; it must be [1, N, K] or [1, K, N], K values a row`,
      )
      return problems
    }
    const width = rowWidth(detect.columns, classes)
    if (rowAxis(shape, width) !== undefined) return problems
    if (detect.columns === 'box,score,class') {
      problems.push(
        `detect.output '${detect.output}' has shape ${formatShape(shape)}, but rows of ${detect.columns} hold 6 values (x4 box, score, class); neither ${shape[1]} nor ${shape[2]} is 6`,
      )
    } else {
      const head = ROW_HEAD[detect.columns]
      const fits = [shape[2]!, shape[1]!].filter((d) => d > head).map((d) => `${d - head} classes`)
      problems.push(
        `detect.output '${detect.output}' has shape ${formatShape(shape)}, but rows of ${detect.columns} with ${labels} labels${offset} hold ${width} values (${head} + ${classes}); ` +
          (fits.length > 0
            ? `its rows fit ${fits.join(' or ')}: are the labels short, or is columns wrong?`
            : 'no dimension is that wide: is columns wrong?'),
      )
    }
    return problems
  }
  if (!detect.outputs) return problems
  const boxes = find('detect.outputs.boxes', detect.outputs.boxes)
  if (boxes && !(boxes.length >= 3 && [4, -1].includes(boxes.at(-1)!))) {
    problems.push(
      `detect.outputs.boxes '${detect.outputs.boxes}' has shape ${formatShape(boxes)}; boxes are [1, N, 4] (or [1, N, 1, 4])`,
    )
  }
  const scores = find('detect.outputs.scores', detect.outputs.scores)
  if (scores && scores.length !== 2 && scores.length !== 3) {
    problems.push(
      `detect.outputs.scores '${detect.outputs.scores}' has shape ${formatShape(scores)}; scores are [1, N], or [1, N, C] with a score per class`,
    )
  } else if (scores?.length === 3 && scores[2] !== -1 && scores[2] !== classes) {
    problems.push(
      `detect.outputs.scores '${detect.outputs.scores}' has shape ${formatShape(scores)}: ${scores[2]} class scores, but labels (${labels})${offset} name ${classes}`,
    )
  }
  if (detect.outputs.classes !== undefined) find('detect.outputs.classes', detect.outputs.classes)
  if (detect.outputs.count !== undefined) find('detect.outputs.count', detect.outputs.count)
  return problems
}
