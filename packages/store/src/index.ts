export * from './store.js';
export * from './lmdb-store.js';
