export type * from './types.js';
export * from './mime.js';
export * from './subject.js';
