'use strict';
// ali-ons (the classic pure-JavaScript RocketMQ client, npm) against a plain name server:
//   node producer_consumer.js NAMESRV TOPIC COUNT
// sends COUNT keyed messages, consumes them with a push consumer (from the first offset),
// and prints `ons: sent N, consumed N` and exits 0 once every message came back; exits 1
// with the reason after 60 s or on any error.

const { Producer, Consumer, Message } = require('ali-ons');

const [nameSrv, topic, countText] = process.argv.slice(2);
if (!nameSrv || !topic || !countText) {
  console.error('usage: node producer_consumer.js NAMESRV TOPIC COUNT');
  process.exit(2);
}
const count = Number(countText);
const LIMIT_MS = 60000;

// ali-ons asks for an HTTP client to look up Aliyun's name server list; with nameSrv
// given it never calls it.
const httpclient = {
  request() {
    throw new Error('no HTTP name server lookup here');
  },
};
// ONS_DEBUG=1 prints the client's info and debug lines too.
const verbose = !!process.env.ONS_DEBUG;
const logger = {
  info: (...a) => verbose && console.error('[info]', ...a),
  debug: (...a) => verbose && console.error('[debug]', ...a),
  warn: (...a) => console.error('[warn]', ...a),
  error: (...a) => console.error('[error]', ...a),
};
const common = {
  httpclient,
  logger,
  clientIP: '127.0.0.1',
  nameSrv,
  pollNameServerInteval: 1000,
  heartbeatBrokerInterval: 1000,
  rebalanceInterval: 1000,
  persistConsumerOffsetInterval: 1000,
};

const timer = setTimeout(() => {
  console.error(`ons: timed out after ${LIMIT_MS} ms; sent ${sent}, consumed ${seen.size}`);
  process.exit(1);
}, LIMIT_MS);

let sent = 0;
let errors = 0;
const seen = new Set();
const want = new Set();

async function main() {
  const producer = new Producer(Object.assign({ producerGroup: 'ons-pg' }, common));
  // The producer and consumer share one MQClient, whose errors reach both.
  producer.on('error', err => {
    errors++;
    console.error(`ons: client error (going on): ${err && err.message || err}`);
  });
  await producer.ready();
  for (let i = 0; i < count; i++) {
    const key = `ons-${i}`;
    const msg = new Message(topic, 'TagA', `body of ${key}`);
    msg.keys = [ key ];
    const r = await producer.send(msg);
    if (r.sendStatus !== 'SEND_OK') {
      throw new Error(`send ${key}: ${JSON.stringify(r)}`);
    }
    want.add(key);
    sent++;
  }
  const consumer = new Consumer(Object.assign({
    consumerGroup: 'ons-cg',
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
    brokerSuspendMaxTimeMillis: 2000,
    consumerTimeoutMillisWhenSuspend: 5000,
    pullTimeDelayMillsWhenException: 200,
  }, common));
  // ali-ons reports a retry topic's route not there yet as an error; RocketMQ's Java
  // client logs the same and carries on. Count them; only the deadline fails.
  consumer.on('error', err => {
    errors++;
    console.error(`ons: consumer error (going on): ${err && err.message || err}`);
  });
  const done = new Promise(resolve => {
    consumer.subscribe(topic, '*', async msg => {
      // Message#keys is the KEYS property: the keys joined by spaces.
      const key = String(msg.keys || '').split(' ')[0];
      if (want.has(key)) {
        seen.add(key);
      }
      if (seen.size === want.size) {
        resolve();
      }
    });
  });
  await consumer.ready();
  await done;
  console.log(`ons: sent ${sent}, consumed ${seen.size}, consumer errors ${errors}`);
  clearTimeout(timer);
  await consumer.close();
  await producer.close();
  process.exit(0);
}

function fail(what, err) {
  console.error(`ons: ${what} error: ${err && err.stack || err}`);
  process.exit(1);
}

main().catch(err => fail('main', err));
