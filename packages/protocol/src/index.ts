export { proto, loaderOptions } from './load.js';
export * from './status.js';
export * from './trace.js';
export * from './clients.js';
export * from './grpc-host.js';
export * from './delivery-transport.js';
export type * from './types.js';
export * from './chunks.js';
export * from './port-calls.js';
