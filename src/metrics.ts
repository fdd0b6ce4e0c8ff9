import { Counter, Registry } from 'prom-client';

// Metrics that modules outside the API increment; the API's GET /metrics serves this registry beside its own.

export const sharedMetrics = new Registry();

// The webhook sender calls webhookDeliveries.inc({ outcome }) once per delivery attempt's end (e.g. delivered, failed).
export const webhookDeliveries = new Counter({
  name: 'sdflow_webhook_deliveries_total',
  help: 'Webhook deliveries by outcome.',
  labelNames: ['outcome'],
  registers: [sharedMetrics],
});
