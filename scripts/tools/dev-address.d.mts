// Types of scripts/tools/dev-address.mjs, for the tests.

/** `[dev]` ip and port from the text of a wrangler.toml (the repository's own by default). */
export declare function devAddress(toml?: string): { ip: string; port: number }
/** The local server's base URL: `--port N` among `argv` wins over wrangler.toml's [dev] port. */
export declare function devUrl(argv?: string[], toml?: string): string
