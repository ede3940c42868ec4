export * from './smtp-frontend.js';
export * from './delivery-channel.js';
export * from './router.js';
export * from './verdict.js';
export * from './message-check.js';
export * from './cluster-frontend.js';
