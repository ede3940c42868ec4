export * from './errors.js';
export * from './address.js';
export * from './config.js';
export * from './logger.js';
export * from './service.js';
export * from './health.js';
export * from './main.js';
export * from './util.js';
