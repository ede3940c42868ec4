import { Counter, Gauge, register } from 'prom-client';

/**
 * The node's Prometheus metrics, served at `/metrics` on its HTTP port (prom-client's
 * default registry). Names follow Prometheus conventions (docs/metrics.md).
 */
export const metrics = {
  registry: register,
  /** 1 while a partner's copy has every message acknowledged into this node's queue, 0 while unprotected. */
  /** Successful logins a frontend had checked, answered from the group's credential cache (`hit`) or with a slow hash (`miss`). */
  authCache: new Counter({ name: 'mailgrid_auth_cache_lookups_total', help: "Successful logins, checked from the owning group's credential cache (hit) or by hashing (miss)", labelNames: ['result'] }),
  /** Failed logins a frontend answered (SMTP AUTH and POP3), and logins refused because the client address was locked out. */
  authFailures: new Counter({ name: 'mailgrid_auth_failures_total', help: 'Failed logins (wrong user or password), and refusals while the client address is locked out', labelNames: ['protocol', 'reason'] }),
  pop3Sessions: new Counter({ name: 'mailgrid_pop3_sessions_total', help: 'POP3 sessions opened' }),
  queueProtected: new Gauge({ name: 'mailgrid_queue_protected', help: "1 while a queue partner's copy has every acknowledged message of this node's queue, else 0" }),
};
