/** Types of files.mjs, for the TypeScript that imports it (test/node/support/global-setup.ts). */
export declare function writeIfChanged(path: string, bytes: Uint8Array): void
export declare function writeWhole(path: string, text: string): void
