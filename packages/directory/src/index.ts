export * from './directory.js';
export * from './embedded.js';
