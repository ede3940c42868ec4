export * from './connection.js';
export * from './listener.js';
export * from './session.js';
export * from './authenticator.js';
export * from './mailbox-session.js';
export * from './tls-source.js';
export * from './proxy-header.js';
export * from './change-feeds.js';
