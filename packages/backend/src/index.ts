export * from './build.js';
export * from './cluster.js';
