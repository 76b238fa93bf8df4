// A signing proxy as people write it in Node: each request is read whole, signed with SigV4 by
// the aws4 package (the one the AWS SDK's predecessors and many proxies use) and forwarded over a
// keep-alive agent; the answer streams back. What bench/proxy_load.sh measures membraned beside.
//   node proxy.js LISTEN_PORT UPSTREAM_PORT
'use strict';
const http = require('node:http');
const aws4 = require('aws4');

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const credentials = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
};

http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const signed = aws4.sign({
      host: `127.0.0.1:${upstreamPort}`,
      path: '/2015-03-31/functions/f/invocations',
      method: 'POST',
      service: 'lambda',
      region: 'us-east-1',
      headers: { 'Content-Type': 'application/json' },
      body,
    }, credentials);
    const upstream = http.request({ ...signed, port: upstreamPort, hostname: '127.0.0.1', agent }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => { res.writeHead(502); res.end(); });
    upstream.end(body);
  });
}).listen(listenPort, '127.0.0.1');
