// Container entry point: `node packages/backend/dist/main.js --etcd http://etcd:2379 --backend-group g1 ...`
import { mainFor } from '@mailgrid/core';
import { clusterBackend } from './cluster.js';

mainFor(clusterBackend);
