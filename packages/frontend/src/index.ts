export * from './smtp-frontend.js';
export * from './delivery-channel.js';
export * from './group-delivery.js';
export * from './frontend.js';
export * from './verdict.js';
export * from './message-check.js';
export * from './cluster-frontend.js';
