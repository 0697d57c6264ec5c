// The child dynamolocal runs (node -e): dynalite's module (argv[1]), in
// memory, on a free loopback port, tables active at once. The first line it
// prints says the port.
//
// It adds one route, POST argv[2], for the proxy's transactions: a JSON list
// of single-item operations, [{"op": "PutItem", "data": {...}}], each run
// through dynalite's own validation and action exactly as dynalite runs one
// request, all at once, answered in one response: [{"status": 200,
// "body": {...}}]. One HTTP round trip for a transaction's items, where
// dynalite's cost is mostly per request.
const path = require('path');
const http = require('http');

const dir = process.argv[1];
const opsPath = process.argv[2];
const dynalite = require(dir);

// dynalite keeps its store to itself: take it as it is made.
const db = require(path.join(dir, 'db'));
let store;
const createStore = db.create;
db.create = (options) => (store = createStore(options));
const createServer = http.createServer;
http.createServer = (handler) => createServer((req, res) =>
  req.method === 'POST' && req.url === opsPath ? serveOps(req, res) : handler(req, res));

const server = dynalite({createTableMs: 0, deleteTableMs: 0, updateTableMs: 0});
db.create = createStore;
http.createServer = createServer;

let validations, ops; // ops: op -> {action, validation}; loaded on first use
function loadOps() {
  validations = require(path.join(dir, 'validations'));
  ops = {};
  for (const op of ['PutItem', 'UpdateItem', 'DeleteItem', 'GetItem']) {
    const name = validations.toLowerFirst(op);
    ops[op] = {
      action: require(path.join(dir, 'actions', name)),
      validation: require(path.join(dir, 'validations', name)),
    };
  }
}

function internalError(err) {
  return {status: 500, body: {__type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: 'dynamolocal launcher: ' + String(err)}};
}

// run1 is dynalite's request handling after the HTTP checks (index.js).
function run1(req) {
  return new Promise((resolve) => {
    const o = req && Object.hasOwn(ops, req.op) ? ops[req.op] : undefined;
    if (!o) {
      return resolve({status: 400, body: {__type: 'com.amazonaws.dynamodb.v20120810#ValidationException', message: 'dynamolocal launcher: no operation ' + (req && req.op)}});
    }
    let data;
    try {
      data = validations.checkTypes(req.data || {}, o.validation.types);
      validations.checkValidations(data, o.validation.types, o.validation.custom, store);
    } catch (err) {
      return resolve(err.statusCode ? {status: err.statusCode, body: err.body} : internalError(err));
    }
    try {
      o.action(store, data, (err, out) => resolve(
        !err ? {status: 200, body: out} : err.statusCode ? {status: err.statusCode, body: err.body} : internalError(err)));
    } catch (err) {
      resolve(internalError(err));
    }
  });
}

function serveOps(req, res) {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let results;
    try {
      if (!ops) loadOps();
      const reqs = JSON.parse(Buffer.concat(chunks).toString());
      results = await Promise.all(reqs.map(run1));
    } catch (err) {
      res.statusCode = 500;
      return res.end(String(err));
    }
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(results));
  });
}

server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({dynaliteReady: true, port: server.address().port})));
