export { singleNode } from './single-node.js';
export { ACCESS_SERVICES, haproxyConfig, type AccessService, type HaproxyFrontend, type HaproxyOptions } from './haproxy-config.js';
export * from './topology.js';
