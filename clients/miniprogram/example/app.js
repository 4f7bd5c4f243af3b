// app.js: one formid-ledger client for the whole mini-program, shared by
// every page through getApp().ledger.
const { createClient } = require('@formid-ledger/miniprogram');
const config = require('./config.js');

App({
  onLaunch() {
    this.ledger = createClient({
      baseUrl: config.ledgerBaseUrl,
      wx,
      onError(err) {
        console.warn('formid-ledger:', err.kind, err.message);
      },
    });
  },
});
