// Drives the public `bling-erp-api` npm client (not written by us) against the Bling sandbox:
// OAuth code flow, read the company, create a contato, find it by document, discover the Pix
// payment method, create a sales order (item discount as a percentage, parcelas adding up to
// the total), be refused when sending the same sale again (Bling's code 3), change its
// situação (discovered by name, never data[0]), generate and send its NF-e. Prints one JSON line with
// what it saw; exits non-zero on any mismatch. Run by tests/it/sandbox_third_party.rs.
'use strict';

const Bling = require('bling-erp-api').default;
const { BlingApiException } = require('bling-erp-api/lib/exceptions/bling-api.exception');

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing env ${name}`);
  return v;
};
const baseUrl = env('BLING_BASE_URL');
const clientId = env('BLING_CLIENT_ID');
const clientSecret = env('BLING_CLIENT_SECRET');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Bling allows 3 requests per second per account; a well-behaved client paces itself.
async function paced(fn) {
  await sleep(350);
  return fn();
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function login() {
  const url = `${baseUrl}/oauth/authorize?response_type=code&client_id=${encodeURIComponent(clientId)}` +
    `&state=npm-state&account=npm-shop&auto_approve=1`;
  const auth = await fetch(url, { redirect: 'manual' });
  check(auth.status === 302, `authorize redirects (got ${auth.status})`);
  const location = new URL(auth.headers.get('location'));
  check(location.searchParams.get('state') === 'npm-state', 'state echoed');
  const code = location.searchParams.get('code');
  const basic = Buffer.from(`${clientId}:${clientSecret}`).toString('base64');
  const resp = await fetch(`${baseUrl}/oauth/token`, {
    method: 'POST',
    headers: { Authorization: `Basic ${basic}`, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code }),
  });
  const tokens = await resp.json();
  // Bling answers token_type in lower case, as measured ([LC]): compare case-insensitively.
  check(resp.status === 200 && String(tokens.token_type).toLowerCase() === 'bearer', 'token exchange');
  return tokens.access_token;
}

async function main() {
  const bling = new Bling(await login(), baseUrl);
  const seen = {};

  // A bad CPF surfaces as the client's BlingApiException with Bling's error body.
  try {
    await paced(() => bling.contatos.create({ nome: 'Inválido', tipo: 'F', numeroDocumento: '12345678900', situacao: 'A' }));
    throw new Error('invalid CPF accepted');
  } catch (e) {
    check(e instanceof BlingApiException, `BlingApiException, got ${e}`);
    check(e.response.error.type === 'VALIDATION_ERROR', 'VALIDATION_ERROR');
    check(e.response.error.fields[0].element === 'numeroDocumento', 'field numeroDocumento');
    check(e.response.error.fields[0].namespace === 'CONTATOS', 'namespace CONTATOS');
    seen.validationCode = e.response.error.fields[0].code;
  }

  const empresa = await paced(() => bling.empresas.me());
  check(/^[0-9a-f]{32}$/.test(empresa.data.id), `empresa id is 32 hex (got ${empresa.data.id})`);
  seen.empresaId = empresa.data.id;

  const created = await paced(() => bling.contatos.create({
    nome: 'Tutor do Rex', tipo: 'F', numeroDocumento: '529.982.247-25', situacao: 'A',
    email: 'tutor@example.com', telefone: '11 3333-4444', indicadorIe: 9,
    endereco: { geral: { endereco: 'Rua dos Pets', numero: '42', bairro: 'Centro', cep: '01310-100', municipio: 'São Paulo', uf: 'SP', complemento: '' } },
  }));
  const idContato = created.data.id;
  check(Number.isInteger(idContato), 'contato id');

  const found = await paced(() => bling.contatos.get({ numeroDocumento: '52998224725' }));
  check(found.data.length === 1 && found.data[0].id === idContato, 'found by numeroDocumento');
  const contato = await paced(() => bling.contatos.find({ idContato }));
  // Bling reads documents and phones back punctuated.
  check(contato.data.nome === 'Tutor do Rex' && contato.data.numeroDocumento === '529.982.247-25' &&
    contato.data.telefone === '(11) 3333-4444' && contato.data.endereco.geral.cep === '01310-100',
  `contato read back (got ${JSON.stringify(contato.data)})`);

  // Payment-method ids are per account: discover Pix (NF-e tipoPagamento 17).
  const formas = await paced(() => bling.formasDePagamento.get());
  const pix = formas.data.find((f) => f.tipoPagamento === 17);
  check(pix, 'Pix payment method');

  const modules = await paced(() => bling.situacoesModulos.getModules());
  const vendas = modules.data.find((m) => m.nome === 'Vendas');
  check(vendas && modules.data[0].id !== vendas.id, 'Vendas module, not the first one');
  const situacoes = await paced(() => bling.situacoesModulos.getModuleSituations({ idModuloSistema: vendas.id }));
  const atendido = situacoes.data.find((s) => s.nome === 'Atendido');
  check(atendido, 'Atendido discovered');

  // itens[].desconto is a percentage: 80.50 + 2 × 45.25 × (1 − 10 %) = 80.50 + 81.45 = 161.95.
  const sale = {
    numeroLoja: 'PETSHOP-INV-1', data: '2025-03-10', dataSaida: '2025-03-10', dataPrevista: '2025-03-11',
    contato: { id: idContato },
    itens: [{ id: 0, codigo: 'BANHO', descricao: 'Banho e tosa', quantidade: 1, valor: 80.5 },
            { id: 0, codigo: 'RACAO', descricao: 'Ração 3 kg', quantidade: 2, valor: 45.25, desconto: 10 }],
    parcelas: [{ dataVencimento: '2025-03-10', valor: 161.95, formaPagamento: { id: pix.id } }],
  };
  const pedido = await paced(() => bling.pedidosVendas.create(sale));
  const idPedidoVenda = pedido.data.id;
  check(Array.isArray(pedido.data.alertas), 'alertas');

  // The same sale again (a blind retry) is refused: Bling's duplicate-sale guard, code 3.
  try {
    await paced(() => bling.pedidosVendas.create(sale));
    throw new Error('identical sale accepted');
  } catch (e) {
    check(e instanceof BlingApiException, `BlingApiException, got ${e}`);
    seen.duplicateCode = e.response.error.fields[0].code;
  }

  const listed = await paced(() => bling.pedidosVendas.get({ numerosLojas: ['PETSHOP-INV-1'] }));
  check(listed.data.length === 1 && listed.data[0].total === 161.95, `order total (got ${JSON.stringify(listed.data[0])})`);

  await paced(() => bling.pedidosVendas.changeSituation({ idPedidoVenda, idSituacao: atendido.id }));
  const order = await paced(() => bling.pedidosVendas.find({ idPedidoVenda }));
  check(order.data.situacao.id === atendido.id, 'situação changed');

  // Real Bling answers {"data":{"idNotaFiscal":…}}; the npm types (from the spec) omit `data`.
  const nfe = await paced(() => bling.pedidosVendas.generateNfe({ idPedidoVenda }));
  const idNotaFiscal = nfe.data.idNotaFiscal;
  check(Number.isInteger(idNotaFiscal), 'idNotaFiscal');
  await paced(() => bling.nfes.send({ idNotaFiscal }));
  const nota = await paced(() => bling.nfes.find({ idNotaFiscal }));
  check(nota.data.situacao === 5 && nota.data.chaveAcesso.length === 44, 'NF-e authorized');

  Object.assign(seen, { idContato, idPedidoVenda, idNotaFiscal, situacao: order.data.situacao.id, nfeSituacao: nota.data.situacao });
  console.log(JSON.stringify(seen));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
