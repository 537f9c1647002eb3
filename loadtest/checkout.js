// The grader's own load test (failfast check loadtest): checkout fails fast while the payments
// provider is slow, and recovers when it is healthy again. The grader owns these thresholds: a
// learner's own script could weaken them. Every value comes from the environment the grader sets.
//
//   slow      checkouts whose amounts the grader's stub holds for 10 s (first phase)
//   recovery  checkouts the stub answers at once (second phase)
//   health    GET /healthz throughout
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL;
const LIMIT_MS = Number(__ENV.CHECKOUT_P95_LIMIT_MS || 3500); // api budget + tolerance
const HEALTHZ_P99_LIMIT_MS = Number(__ENV.HEALTHZ_P99_LIMIT_MS || 100);
const RECOVERY_FAILED_MAX = Number(__ENV.RECOVERY_FAILED_MAX || 0.01); // a fraction
const SLOW_S = Number(__ENV.SLOW_S || 6);
const RECOVERY_S = Number(__ENV.RECOVERY_S || 5);
const SLOW_AMOUNT_BASE = Number(__ENV.SLOW_AMOUNT_BASE || 1000000);
const RECOVERY_AMOUNT_BASE = Number(__ENV.RECOVERY_AMOUNT_BASE || 2000000);

// An exception ends an iteration without failing the run (k6 still exits 0): count them.
const scriptErrors = new Counter('script_errors');

export const options = {
  // p(99) is not in k6's summary unless asked for; count guards against vacuous thresholds.
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
  scenarios: {
    slow: {
      executor: 'constant-arrival-rate', rate: 10, timeUnit: '1s', duration: `${SLOW_S}s`,
      preAllocatedVUs: 40, maxVUs: 150, exec: 'slowCheckout', tags: { phase: 'slow' },
    },
    recovery: {
      executor: 'constant-arrival-rate', rate: 20, timeUnit: '1s', duration: `${RECOVERY_S}s`,
      startTime: `${SLOW_S}s`, preAllocatedVUs: 20, maxVUs: 100, exec: 'recoveryCheckout',
      tags: { phase: 'recovery' },
    },
    health: {
      executor: 'constant-arrival-rate', rate: 10, timeUnit: '1s',
      duration: `${SLOW_S + RECOVERY_S}s`, preAllocatedVUs: 5, maxVUs: 20, exec: 'healthz',
      tags: { phase: 'all' },
    },
  },
  thresholds: {
    'http_req_duration{scenario:slow}': [`p(95)<${LIMIT_MS}`],
    'http_req_duration{scenario:recovery}': [`p(95)<${LIMIT_MS}`],
    'http_req_duration{scenario:health}': [`p(99)<${HEALTHZ_P99_LIMIT_MS}`],
    'http_req_failed{scenario:recovery}': [`rate<${RECOVERY_FAILED_MAX}`],
    'script_errors': ['count<1'],
  },
};

function checkout(base) {
  try {
    const amount = base + exec.scenario.iterationInTest;
    http.post(`${BASE_URL}/checkout`, JSON.stringify({ amount_cents: amount }), {
      headers: { 'Content-Type': 'application/json' },
      tags: { name: 'checkout' },
      timeout: '15s',
    });
  } catch (error) {
    scriptErrors.add(1);
    throw error;
  }
}

export function slowCheckout() {
  checkout(SLOW_AMOUNT_BASE);
}

export function recoveryCheckout() {
  checkout(RECOVERY_AMOUNT_BASE);
}

export function healthz() {
  http.get(`${BASE_URL}/healthz`, { tags: { name: 'healthz' }, timeout: '5s' });
}

// The grader reads this file; nothing is printed (the grader prints its own report).
export function handleSummary(data) {
  const out = { stdout: '' };
  if (__ENV.SUMMARY_PATH) out[__ENV.SUMMARY_PATH] = JSON.stringify(data);
  return out;
}
