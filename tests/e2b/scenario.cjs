// E2B JS SDK scenario against corral (unmodified SDK; env: E2B_API_URL,
// E2B_SANDBOX_URL, E2B_API_KEY, E2B_DOMAIN). Prints OK lines; exits non-zero on failure.
const { Sandbox, CommandExitError, AuthenticationError } = require('e2b')
const assert = require('node:assert/strict')

async function main() {
  const tag = Math.random().toString(16).slice(2, 10)
  const sbx = await Sandbox.create({ metadata: { suite: 'e2b', tag }, timeoutMs: 120_000 })
  console.log('OK create', sbx.sandboxId)

  const r = await sbx.commands.run('echo hello; echo oops >&2')
  assert.equal(r.stdout, 'hello\n')
  assert.equal(r.stderr, 'oops\n')
  assert.equal(r.exitCode, 0)
  console.log('OK run')

  await assert.rejects(sbx.commands.run('exit 3'), (e) => e instanceof CommandExitError && e.exitCode === 3)
  console.log('OK exit error')

  const seen = []
  const t0 = Date.now()
  await sbx.commands.run('echo first; sleep 1; echo second', {
    onStdout: (d) => seen.push([Date.now() - t0, d.trim()]),
  })
  assert.deepEqual(seen.map((s) => s[1]), ['first', 'second'])
  assert.ok(seen[0][0] < 800, `first line came late: ${JSON.stringify(seen)}`)
  console.log('OK streaming', seen.map((s) => s[0]))

  const h = await sbx.commands.run('sleep 60', { background: true })
  assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid))
  assert.ok(await sbx.commands.kill(h.pid))
  for (let i = 0; i < 50 && (await sbx.commands.list()).some((p) => p.pid === h.pid); i++) {
    await new Promise((res) => setTimeout(res, 50))
  }
  assert.ok(!(await sbx.commands.list()).some((p) => p.pid === h.pid))
  console.log('OK background')

  await sbx.files.write('/tmp/hello.txt', 'hi there')
  assert.equal(await sbx.files.read('/tmp/hello.txt'), 'hi there')
  await sbx.files.makeDir('/tmp/d')
  await sbx.files.write([{ path: '/tmp/d/a.txt', data: 'A' }, { path: '/tmp/d/b.txt', data: 'B' }])
  assert.deepEqual((await sbx.files.list('/tmp/d')).map((e) => e.name).sort(), ['a.txt', 'b.txt'])
  assert.ok(await sbx.files.exists('/tmp/hello.txt'))
  assert.ok(!(await sbx.files.exists('/tmp/nope')))
  console.log('OK files')

  const events = []
  const w = await sbx.files.watchDir('/tmp/d', (e) => events.push(e))
  await sbx.files.write('/tmp/d/c.txt', 'C')
  for (let i = 0; i < 40 && !events.some((e) => e.name === 'c.txt'); i++) {
    await new Promise((res) => setTimeout(res, 50))
  }
  await w.stop()
  assert.ok(events.some((e) => e.name === 'c.txt'), JSON.stringify(events))
  console.log('OK watch')

  const found = await Sandbox.list({ query: { metadata: { tag } } }).nextItems()
  assert.deepEqual(found.map((s) => s.sandboxId), [sbx.sandboxId])
  console.log('OK list')

  await sbx.setTimeout(200_000)
  console.log('OK timeout')

  await assert.rejects(Sandbox.create({ apiKey: 'crl_wrong' }), (e) => e instanceof AuthenticationError)
  console.log('OK wrong key')
  await assert.rejects(Sandbox.connect('sb-00000000000000000000'))
  console.log('OK unknown id')

  await sbx.kill()
  assert.equal((await Sandbox.list({ query: { metadata: { tag } } }).nextItems()).length, 0)
  await assert.rejects(sbx.commands.run('true'))
  console.log('OK killed')
  console.log('SCENARIO PASSED')
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
