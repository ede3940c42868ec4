export * from './build.js';
export * from './group-member.js';
