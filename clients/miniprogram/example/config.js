// Where the mini-program reaches formid-ledger. The domain must be listed
// among the mini-program's request domains (mp.weixin.qq.com → 开发管理 →
// 服务器域名).
module.exports = {
  ledgerBaseUrl: 'https://ledger.example.com',
};
