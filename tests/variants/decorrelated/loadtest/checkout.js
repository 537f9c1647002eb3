// Reference load test: steady checkout traffic, held to the budgets of budgets.yaml.
//
//   k6 run loadtest/checkout.js                                  # through nginx (prod-sim.yml)
//   k6 run -e BASE_URL=http://127.0.0.1:8000 loadtest/checkout.js  # straight at the api
//
// Env: BASE_URL, RATE (checkouts/s, default 20), DURATION (default 30s),
//      AMOUNT_BASE (amount_cents of the first checkout, default 1000).

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const RATE = Number(__ENV.RATE || 20);
const DURATION = __ENV.DURATION || '30s';
const AMOUNT_BASE = Number(__ENV.AMOUNT_BASE || 1000);

const API_BUDGET_MS = 3000; // layers.api.timeout_s of budgets.yaml
const SLACK_MS = 200; // nginx and the network, on top of the api's own deadline

// A decline is a correct answer, not a failed request.
http.setResponseCallback(http.expectedStatuses({ min: 200, max: 399 }, 402));

export const options = {
  scenarios: {
    checkout: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      // Enough VUs for every checkout of the last 3 s to be in flight at once, and then some.
      preAllocatedVUs: RATE * 4,
      maxVUs: RATE * 20,
    },
  },
  thresholds: {
    'http_req_duration{name:checkout}': ['p(95)<3000'], // API_BUDGET_MS
    'http_req_failed{name:checkout}': ['rate<0.01'],
    checks: ['rate>0.99'],
    // A threshold on a metric without samples passes: make sure checkouts were sent at all.
    'http_reqs{name:checkout}': ['count>0'],
  },
};

export default function () {
  // One amount per checkout: it ties every provider attempt back to its checkout.
  const amount = AMOUNT_BASE + exec.scenario.iterationInTest;
  const res = http.post(`${BASE_URL}/checkout`, JSON.stringify({ amount_cents: amount }), {
    headers: { 'Content-Type': 'application/json' },
    tags: { name: 'checkout' },
    // The client is the outermost layer: it waits longer than nginx's 10 s, so that a
    // gateway timeout shows up as nginx's 504 rather than as k6 giving up.
    timeout: '15s',
  });
  // Checks hold every answer to the contract, faults or not; http_req_failed counts the
  // checkouts that did not go through.
  check(res, {
    'checkout answered within the api budget': (r) => r.timings.duration < API_BUDGET_MS + SLACK_MS,
    'checkout answered as the contract says': answeredPerContract,
  });
}

function answeredPerContract(r) {
  const isJson = (r.headers['Content-Type'] || '').startsWith('application/json');
  if (r.status === 200) return isJson && r.json('status') === 'ok';
  return isJson && [402, 502, 503, 504].includes(r.status);
}
