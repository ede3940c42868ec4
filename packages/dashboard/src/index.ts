export * from './snapshot.js';
export * from './routes.js';
