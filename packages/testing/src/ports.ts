export { freePort } from '@mailgrid/core';
