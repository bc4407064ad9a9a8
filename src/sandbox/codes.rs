//! Validation codes in `fields[].code`. Only four are Bling's, each named by a public source;
//! every other code is the sandbox's own, in the 900s so that it can never be mistaken for one of
//! Bling's (no public source gives Bling's codes for those refusals).

/// "Informações idênticas a última venda salva, …" ([FM] `blingErrors.test.ts`, [LC]).
pub(crate) const VENDA_IDENTICA: i64 = 3;
/// "Id da forma de pagamento inválido." inside the code-49 collection ([OAS] `ErrorField`).
pub(crate) const FORMA_PAGAMENTO_INVALIDA: i64 = 12;
/// "O somatório do valor das parcelas difere do total da venda" ([LC] `bling_pedidos.go`).
pub(crate) const PARCELAS_SOMA: i64 = 22;
/// "Uma ou mais parcelas da venda possuem erros de validação", details in `collection` ([OAS]).
pub(crate) const PARCELAS_COM_ERROS: i64 = 49;

// The sandbox's own codes.
pub(crate) const PARAMETRO_NUMERICO: i64 = 902;
pub(crate) const DATA_FILTRO: i64 = 903;
pub(crate) const PERIODO_SUPERIOR_A_UM_ANO: i64 = 904;
pub(crate) const CRITERIO: i64 = 905;
pub(crate) const NOME: i64 = 910;
pub(crate) const DATA: i64 = 933;
pub(crate) const NUMERO_INVALIDO: i64 = 934;
pub(crate) const NUMERO_DUPLICADO: i64 = 935;
pub(crate) const CONTATO_OBRIGATORIO: i64 = 936;
pub(crate) const CONTATO_INEXISTENTE: i64 = 937;
pub(crate) const SITUACAO_PEDIDO: i64 = 938;
pub(crate) const NFE_JA_GERADA: i64 = 939;
pub(crate) const ITENS_VAZIO: i64 = 940;
pub(crate) const ITEM_QUANTIDADE: i64 = 941;
pub(crate) const ITEM_VALOR: i64 = 942;
pub(crate) const ITEM_DESCONTO: i64 = 943;
pub(crate) const ITEM_DESCRICAO: i64 = 944;
pub(crate) const ITENS_COM_ERROS: i64 = 945;
pub(crate) const DESCONTO_UNIDADE: i64 = 946;
pub(crate) const DESCONTO_VALOR: i64 = 947;
pub(crate) const OUTRAS_DESPESAS: i64 = 948;
pub(crate) const CPF: i64 = 951;
pub(crate) const CNPJ: i64 = 950;
pub(crate) const TIPO_DOCUMENTO: i64 = 952;
pub(crate) const TIPO: i64 = 953;
pub(crate) const SITUACAO_CONTATO: i64 = 954;
pub(crate) const CEP: i64 = 955;
pub(crate) const UF: i64 = 956;
pub(crate) const EMAIL: i64 = 957;
pub(crate) const INDICADOR_IE: i64 = 958;
pub(crate) const IE: i64 = 959;
pub(crate) const SEXO: i64 = 960;
pub(crate) const DATA_NASCIMENTO: i64 = 961;
pub(crate) const PARCELA_ID: i64 = 962;
pub(crate) const PARCELA_VALOR: i64 = 963;
pub(crate) const PARCELA_VENCIMENTO: i64 = 964;
pub(crate) const NFE_AUTORIZADA: i64 = 970;
pub(crate) const NFE_REJEITADA: i64 = 971;
