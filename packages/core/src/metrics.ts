import { Gauge, register } from 'prom-client';

/**
 * The node's Prometheus metrics, served at `/metrics` on its HTTP port (prom-client's
 * default registry). Names follow Prometheus conventions (docs/metrics.md).
 */
export const metrics = {
  registry: register,
  /** 1 while a partner's copy has every message acknowledged into this node's queue, 0 while unprotected. */
  queueProtected: new Gauge({ name: 'mailgrid_queue_protected', help: "1 while a queue partner's copy has every acknowledged message of this node's queue, else 0" }),
};
