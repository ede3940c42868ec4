export type * from './types.js';
export * from './mime.js';
export * from './subject.js';
export * from './collation.js';
export * from './search.js';
export * from './sort.js';
export * from './thread.js';
