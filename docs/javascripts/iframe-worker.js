/*
 * Web Workers for pages opened from disk (file://), where browsers refuse to start a Worker from a
 * file. Material's offline plugin expects such a shim (its default is fetched from unpkg.com, which
 * a site that must work offline cannot use): with it, site search runs the same worker script in a
 * hidden iframe. Over http(s) this file does nothing.
 */
(function () {
  "use strict";
  if (window.location.protocol !== "file:") {
    return;
  }

  class IFrameWorker extends EventTarget {
    constructor(url) {
      super();
      this.onmessage = null;
      this.onerror = null;
      this.pending = [];
      this.loaded = false;
      this.iframe = document.createElement("iframe");
      this.iframe.hidden = true;
      this.iframe.setAttribute("aria-hidden", "true");
      (document.body || document.documentElement).appendChild(this.iframe);
      const scope = this.iframe.contentWindow;
      // The worker script answers with the global postMessage: hand its messages to this object.
      scope.postMessage = (data) => this.emit(new MessageEvent("message", { data: data }));
      scope.addEventListener("error", (event) => this.emit(new ErrorEvent("error", { message: event.message })));
      const script = scope.document.createElement("script");
      script.src = new URL(url, window.location.href).href;
      script.onload = () => {
        this.loaded = true;
        this.pending.splice(0).forEach((data) => this.deliver(data));
      };
      scope.document.head.appendChild(script);
    }

    postMessage(data) {
      if (this.loaded) {
        this.deliver(data);
      } else {
        this.pending.push(data);
      }
    }

    terminate() {
      this.iframe.remove();
    }

    deliver(data) {
      const scope = this.iframe.contentWindow;
      scope.dispatchEvent(new scope.MessageEvent("message", { data: data }));
    }

    emit(event) {
      this.dispatchEvent(event);
      const handler = this["on" + event.type];
      if (typeof handler === "function") {
        handler.call(this, event);
      }
    }
  }

  window.Worker = IFrameWorker;
})();
