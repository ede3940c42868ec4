export { composeNode, type NodeRole, type NodePart, type NodeBase } from './compose.js';
