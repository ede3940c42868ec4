export * from './keys.js';
export * from './etcd.js';
export * from './prefix-watch.js';
export * from './etcd-directory.js';
export * from './membership.js';
export * from './settings.js';
export * from './cluster-node.js';
export * from './cluster-role.js';
