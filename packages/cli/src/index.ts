export { singleNode } from './single-node.js';
