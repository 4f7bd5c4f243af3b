// pages/index/index.js: each submit of the report-submit form hands its
// formId to the ledger; the "Notify me" button asks for a subscribe grant.

// A subscribe template of the mini-program (this one is built into the
// sandbox's simulator; use your own from mp.weixin.qq.com).
const ORDER_SHIPPED = 'Xq5qC3Z8lWJtKsN0yS3a8fGmN3n4Y1fT5nQbH7sWq9E';

Page({
  data: { notify: '' },

  onSubmit(e) {
    getApp().ledger.collectFormId(e);
    // The form's own work goes here: e.detail.value holds its fields.
  },

  // Must stay a tap handler: WeChat opens the popup only from a tap.
  onNotifyTap() {
    const ledger = getApp().ledger;
    return ledger
      .requestSubscribe([ORDER_SHIPPED])
      .then(({ answer }) => this.setData({ notify: answer[ORDER_SHIPPED] }))
      .catch((err) => this.setData({ notify: 'failed: ' + err.errMsg }));
  },
});
