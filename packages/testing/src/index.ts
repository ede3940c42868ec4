export * from './ports.js';
export * from './node-process.js';
export * from './smtp-transcript.js';
export * from './grpc.js';
export * from './sink.js';
export * from './wait.js';
export * from './etcd.js';
export * from './tcp-proxy.js';
