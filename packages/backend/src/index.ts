export * from './backend.js';
export * from './cluster-backend.js';
