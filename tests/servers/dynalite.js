// Starts dynalite (a DynamoDB implementation with correct conditional writes) on loopback only.
// The dynalite CLI binds every interface; the tests must touch nothing but 127.0.0.1.
const dynalite = require('dynalite');
const port = parseInt(process.argv[2], 10);
const path = process.argv[3];  // optional LevelDB directory: data survives a restart
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0, ...(path ? { path } : {}) });
server.listen(port, '127.0.0.1', (err) => {
  if (err) { console.error(err); process.exit(1); }
  console.log(`dynalite listening on 127.0.0.1:${port}`);
  // Tests that stop the server behind the store's back find its pid here.
  if (process.env.DYNALITE_PID_FILE) require('fs').writeFileSync(process.env.DYNALITE_PID_FILE, String(process.pid));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
