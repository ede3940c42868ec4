export * from './sieve.js';
export * from './evaluate.js';
export * from './message.js';
export * from './vacation.js';
