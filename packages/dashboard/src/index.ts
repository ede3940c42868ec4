export * from './snapshot.js';
export * from './routes.js';
export * from './cluster-snapshots.js';
