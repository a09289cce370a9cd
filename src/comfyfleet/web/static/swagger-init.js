// Swagger UI for comfyfleet, served with the page (no CDN). The page and ../openapi.json sit
// behind the same auth as the API: the browser asks for basic-auth credentials once and
// sends them with the spec fetch and with "Try it out" calls. Authorize (basic or bearer)
// overrides them per call, e.g. to try the API as an API key.
(function () {
  "use strict";
  window.addEventListener("load", function () {
    window.ui = SwaggerUIBundle({
      url: "openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      displayOperationId: true,
      persistAuthorization: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
    });
  });
})();
