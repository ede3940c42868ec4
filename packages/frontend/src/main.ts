// Container entry point: `node packages/frontend/dist/main.js --etcd http://etcd:2379 ...`
import { mainFor } from '@mailgrid/core';
import { clusterFrontend } from './cluster.js';

mainFor(clusterFrontend);
