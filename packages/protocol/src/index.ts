export { proto, loaderOptions } from './load.js';
export * from './status.js';
export * from './trace.js';
export * from './clients.js';
export type * from './types.js';
