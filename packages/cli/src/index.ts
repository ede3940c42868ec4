export { haproxyConfig, type HaproxyFrontend, type HaproxyOptions } from './local-cluster/haproxy-config.js';
export * from './local-cluster/topology.js';
