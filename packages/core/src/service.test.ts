import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { stopAll, type Service, type ServiceState } from './service.js';

/** A service whose stop takes `takesMs` (or what it is given, if less), recording what it was given. */
function part(name: string, takesMs: number, given: Record<string, number>): Service {
  let state: ServiceState = 'running';
  return {
    name,
    get state() {
      return state;
    },
    async start() {},
    async stop(drainMs = 30_000) {
      given[name] = drainMs;
      await new Promise((r) => setTimeout(r, Math.min(takesMs, drainMs)));
      state = 'stopped';
    },
  };
}

describe('stopAll: one drain deadline for the whole node', () => {
  it('each service gets what is left of drainMs, not drainMs again', async () => {
    const given: Record<string, number> = {};
    // Stopped in reverse: smtp first (it uses 300 ms), then pop3 (takes all it gets), then the store.
    await stopAll([part('store', 0, given), part('pop3', 10_000, given), part('smtp', 300, given)], pino({ level: 'silent' }), 600);
    assert.equal(given.smtp, 600);
    assert.ok(given.pop3 <= 300, `pop3 had what smtp left: ${given.pop3}`);
    assert.ok(given.store <= 10, `the store, after the deadline, closes at once: ${given.store}`);
  });
});
