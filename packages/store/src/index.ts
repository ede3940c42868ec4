export * from './store.js';
export * from './logged-lmdb.js';
export * from './lmdb-store.js';
