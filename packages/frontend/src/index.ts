export * from './smtp-frontend.js';
export * from './build.js';
export * from './message-check.js';
export * from './cluster.js';
