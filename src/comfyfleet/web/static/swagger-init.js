// Swagger UI for comfyfleet, served with the page (no CDN). The spec comes from
// ../openapi.json. Without credentials it describes the API; once the user authorizes, the
// spec is fetched again with those credentials, which adds this fleet's workflow params.
(function () {
  "use strict";
  let system = null;

  function base64(text) {
    // btoa only takes Latin-1: encode as UTF-8 first (RFC 7617 charset).
    const bytes = new TextEncoder().encode(text);
    let binary = "";
    bytes.forEach(function (b) { binary += String.fromCharCode(b); });
    return window.btoa(binary);
  }

  function authorizationHeader() {
    if (!system) { return null; }
    const auth = system.authSelectors.authorized().toJS();
    const basic = auth.basicAuth && auth.basicAuth.value;
    if (basic && basic.username) {
      return "Basic " + base64(basic.username + ":" + (basic.password || ""));
    }
    const bearer = auth.bearerAuth && auth.bearerAuth.value;
    return bearer ? "Bearer " + bearer : null;
  }

  function reloadSpec() {
    window.setTimeout(function () { system.specActions.download(); }, 0);
  }

  // Re-fetch the spec when the user logs in or out, so workflow schemas appear or go.
  function ReloadOnAuth(sys) {
    system = sys;
    const wrap = function (original) {
      return function (payload) {
        const out = original(payload);
        reloadSpec();
        return out;
      };
    };
    return { statePlugins: { auth: { wrapActions: { authorize: wrap, logout: wrap } } } };
  }

  window.addEventListener("load", function () {
    window.ui = SwaggerUIBundle({
      url: "openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      displayOperationId: true,
      persistAuthorization: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis],
      plugins: [ReloadOnAuth],
      layout: "BaseLayout",
      requestInterceptor: function (request) {
        if (request.loadSpec) {
          const header = authorizationHeader();
          if (header) { request.headers.Authorization = header; }
        }
        return request;
      },
    });
  });
})();
