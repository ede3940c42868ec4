export * from './queue-store.js';
export * from './schedule.js';
export * from './dsn.js';
export * from './relay.js';
export * from './mail-queue.js';
export * from './queue-service.js';
export * from './partnership/owner.js';
export * from './partnership/keeper.js';
